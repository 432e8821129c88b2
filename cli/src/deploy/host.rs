//! One host's part of a deploy or rollback: the artifact uploaded if the
//! host lacks it, the request sent, and hostd's events followed to
//! `finished`. hostd owns the change once it has accepted it; losing the
//! connection loses the view, not the host's consistency.

use std::path::Path;
use std::time::Duration;

use hostd_api::{API_PREFIX, ArtifactInfo, DeployEvent, DeployOutcome};
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::Bytes;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::time::{Instant, timeout_at};

use crate::config::HostTarget;
use crate::transport::{HostClient, Transport, TransportError};

/// Upload chunk: large enough for throughput, small enough for a smooth bar.
const CHUNK: usize = 256 * 1024;

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

/// The artifact as hostctl ships it.
#[derive(Debug, Clone)]
pub struct Upload<'a> {
    pub digest: &'a str,
    pub file: &'a Path,
    pub bytes: u64,
}

/// What one host is asked.
pub struct Change<'a> {
    /// `deploy` or `rollback`.
    pub path: &'static str,
    pub body: Bytes,
    pub version: &'a str,
    pub upload: Option<Upload<'a>>,
    pub timeout: Duration,
    pub progress: bool,
}

/// Runs `change` on `target`; every event goes to `on_event`. Never fails:
/// whatever happened is in the result.
pub async fn run(
    transport: &Transport,
    target: &HostTarget,
    change: &Change<'_>,
    mut on_event: impl FnMut(&DeployEvent),
) -> HostResult {
    let started = Instant::now();
    let deadline = started + change.timeout;
    let mut result = HostResult::skipped(&target.name, change.version);
    let outcome = timeout_at(deadline, async {
        let mut client = transport.connect(target).await.map_err(|e| (false, e))?;
        let followed = follow(&mut client, change, &mut result, &mut on_event).await;
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
    on_event: &mut impl FnMut(&DeployEvent),
) -> Result<(HostOutcome, Option<String>), (bool, TransportError)> {
    if let Some(upload) = &change.upload {
        result.uploaded_bytes = ensure_artifact(client, upload, change.progress)
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

/// Uploads the artifact unless the host has it. Returns the bytes sent.
pub(crate) async fn ensure_artifact(
    client: &mut HostClient,
    upload: &Upload<'_>,
    progress: bool,
) -> Result<Option<u64>, TransportError> {
    let path = format!("{API_PREFIX}/artifacts/{}", upload.digest);
    match client.get_json::<ArtifactInfo>(&path).await {
        Ok(_) => return Ok(None),
        Err(TransportError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    let bar = if progress {
        let bar = indicatif::ProgressBar::new(upload.bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} upload {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(client.host().to_owned());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
    let file = upload.file.to_owned();
    let reader_bar = bar.clone();
    // Fed as the connection takes it: the artifact is never all in memory.
    let feeder = tokio::spawn(async move {
        let mut f = match tokio::fs::File::open(&file).await {
            Ok(f) => f,
            Err(e) => return tx.abort(e),
        };
        loop {
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send_data(Bytes::from(buf)).await.is_err() {
                        return;
                    }
                    reader_bar.inc(n as u64);
                }
                Err(e) => return tx.abort(e),
            }
        }
    });
    let sent = client
        .upload(&path, body.boxed_unsync(), "application/zstd")
        .await;
    feeder.abort();
    bar.finish_and_clear();
    sent.map(|_| Some(upload.bytes))
}
