//! The apply itself: batch by batch over the hosts whose plan changes
//! something, each host's NDJSON events followed to `finished`, and the
//! first batch with a host not ending on the new configuration stopping
//! the rest. hostd owns an apply once it has begun it: losing the
//! connection loses the view, not the host's consistency.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use hostd_api::{API_PREFIX, ApplyEvent, ApplyOutcome, ApplyRecord, ApplyRequest};
use hyper::body::Bytes;
use serde::Serialize;

use super::render_apply::Steps;
use super::{ApplySettings, HostConfigError, HostPlan};
use crate::config::HostTarget;
use crate::fleet::{self, Part};
use crate::transport::{StreamStop, Transport};

/// How one host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostOutcome {
    Applied,
    /// Already ran the file: its plan was empty (it was not asked to
    /// apply), or hostd found so.
    Unchanged,
    /// hostd put the previous configuration back.
    RolledBack,
    /// Putting it back failed too: the host needs an operator.
    Failed,
    /// hostd refused the apply or could not be reached: nothing began.
    NotApplied,
    /// hostctl lost sight of an apply hostd had begun; hostd ends it by
    /// itself.
    Unknown,
    /// Not tried: a host of an earlier batch failed.
    Skipped,
}

impl HostOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::NotApplied => "not_applied",
            Self::Unknown => "unknown",
            Self::Skipped => "skipped",
        }
    }

    /// The host runs its declared file.
    pub fn is_ok(self) -> bool {
        matches!(self, Self::Applied | Self::Unchanged)
    }
}

impl From<ApplyOutcome> for HostOutcome {
    fn from(o: ApplyOutcome) -> Self {
        match o {
            ApplyOutcome::Applied => Self::Applied,
            ApplyOutcome::Unchanged => Self::Unchanged,
            ApplyOutcome::RolledBack => Self::RolledBack,
            ApplyOutcome::Failed => Self::Failed,
            ApplyOutcome::Refused => Self::NotApplied,
        }
    }
}

/// One host's part; `apply --json` lists these under `applies`.
#[derive(Debug, Clone, Serialize)]
pub struct HostApply {
    pub host: String,
    pub outcome: HostOutcome,
    /// hostd's record of the apply, as its ledger keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<ApplyRecord>,
    /// Why there is no record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HostApply {
    fn new(target: &HostTarget, outcome: HostOutcome, error: Option<String>) -> Self {
        Self {
            host: target.name.clone(),
            outcome,
            record: None,
            error,
        }
    }

    /// The record's error, or why there is no record.
    pub fn error(&self) -> Option<&str> {
        self.record
            .as_ref()
            .and_then(|r| r.error.as_deref())
            .or(self.error.as_deref())
    }

    fn followed(
        target: &HostTarget,
        end: Result<ApplyRecord, StreamStop>,
        timeout: Duration,
    ) -> Self {
        const BY_ITSELF: &str = "hostd finishes or puts the previous configuration back by itself: see `hostctl applies`";
        let lost = |why: String| {
            Self::new(
                target,
                HostOutcome::Unknown,
                Some(format!("{why}; {BY_ITSELF}")),
            )
        };
        match end {
            Ok(record) => Self {
                host: target.name.clone(),
                outcome: record.outcome.into(),
                record: Some(record),
                error: None,
            },
            Err(StreamStop::Refused(e)) => Self::new(
                target,
                HostOutcome::NotApplied,
                Some(hostd_api::error_chain(&e)),
            ),
            Err(StreamStop::Lost(e)) => lost(hostd_api::error_chain(&e)),
            Err(StreamStop::Ended) => lost("hostd's answer ended before `finished`".into()),
            Err(StreamStop::TimedOut) => lost(format!(
                "stopped following after {} (--timeout)",
                humantime::format_duration(timeout)
            )),
            Err(StreamStop::Output(e)) => lost(format!("cannot show the progress: {e}")),
        }
    }
}

/// The action: the hosts whose plan changes something, `batch_size` at a
/// time; the others are `unchanged` without being asked. Each host's
/// progress goes to `err` as it comes (not with --json).
pub(super) async fn all(
    transport: &Transport,
    s: &ApplySettings,
    plans: &[HostPlan],
    err: &mut impl Write,
) -> Result<Vec<HostApply>, HostConfigError> {
    let hosts = &s.plan.targets.hosts;
    let mut requests = BTreeMap::new();
    for ((target, file), plan) in hosts.iter().zip(&s.plan.files).zip(plans) {
        if plan.changes() {
            let request = ApplyRequest {
                text: file.text.clone(),
                source: file.source.clone(),
                requested_by: s.requested_by.clone(),
                lock_wait_seconds: s.lock_wait_seconds,
                health_timeout_seconds: s.health_timeout_seconds,
            };
            let body = serde_json::to_vec(&request).map_err(HostConfigError::Request)?;
            requests.insert(target.name.clone(), Bytes::from(body));
        }
    }
    let changing: Vec<HostTarget> = hosts
        .iter()
        .filter(|t| requests.contains_key(&t.name))
        .cloned()
        .collect();
    // The hosts of a batch are followed in this one task: their lines
    // take turns on `err`, never at once.
    let err = RefCell::new(err);
    let path = format!("{API_PREFIX}/config/apply");
    let parts = fleet::in_batches(
        &changing,
        s.batch_size,
        |target| {
            let (err, path) = (&err, &path);
            let body = requests.get(&target.name).cloned();
            async move {
                let Some(body) = body else {
                    let why = "hostctl built no request for this host".to_owned();
                    return HostApply::new(target, HostOutcome::NotApplied, Some(why));
                };
                tracing::info!(host = target.name, "apply");
                let mut steps = Steps::new(&target.name);
                let on_event = |e: &ApplyEvent| {
                    // A closed stderr must not stop the apply.
                    if let (false, Ok(mut w)) = (s.plan.json, err.try_borrow_mut()) {
                        let _ = steps.event(&mut **w, e);
                    }
                    Ok(())
                };
                let last = |e: &ApplyEvent| match e {
                    ApplyEvent::Finished { record } => Some(record.clone()),
                    _ => None,
                };
                // Root on the host: hostd lets no one else rewrite its
                // configuration.
                let root = target.as_root();
                let end = transport
                    .follow(&root, path, Some(body), s.timeout, on_event, last)
                    .await;
                HostApply::followed(target, end, s.timeout)
            }
        },
        |h: &HostApply| !h.outcome.is_ok(),
    )
    .await;
    let mut parts: BTreeMap<&str, Part<HostApply>> = changing
        .iter()
        .map(|t| t.name.as_str())
        .zip(parts)
        .collect();
    Ok(hosts
        .iter()
        .map(|t| match parts.remove(t.name.as_str()) {
            Some(part) => part.or_skipped(|| HostApply::new(t, HostOutcome::Skipped, None)),
            None => HostApply::new(t, HostOutcome::Unchanged, None),
        })
        .collect())
}

/// Done only when every host runs its declared file.
pub(super) fn verdict(applies: &[HostApply]) -> Result<(), HostConfigError> {
    let hosts = |pick: fn(HostOutcome) -> bool| -> Vec<String> {
        applies
            .iter()
            .filter(|a| pick(a.outcome))
            .map(|a| a.host.clone())
            .collect()
    };
    let failed = hosts(|o| !o.is_ok() && o != HostOutcome::Skipped);
    let skipped = hosts(|o| o == HostOutcome::Skipped);
    if failed.is_empty() && skipped.is_empty() {
        return Ok(());
    }
    Err(HostConfigError::Failed {
        failed,
        done: hosts(|o| o == HostOutcome::Applied),
        skipped,
    })
}
