//! Shipping to CloudWatch Logs without the CloudWatch agent: the journal
//! of every unit hostd runs (services, their jobs, hooks and tasks, hostd
//! itself) to a stream per host and unit, and hostd's figures as Embedded
//! Metric Format events, from which CloudWatch extracts the metrics.
//!
//! Each round reads what the journal gained since the last cursor,
//! redacts known secret values, appends it to a bounded spool on disk
//! ([`spool`]) and ships the spool ([`ship`]) unless a failure's backoff
//! is still running. The spool is what makes a restart, a reboot or an
//! outage lose nothing; its bound is what an outage longer than the disk
//! allows costs, counted. EMF through PutLogEvents rather than
//! PutMetricData: one client, one backlog and one retry path for both,
//! and at our rate the cheaper of the two (README, "CloudWatch").

pub mod http;
mod journal;
mod redact;
mod ship;
pub mod sink;
pub mod spool;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use hostd_api::{ComponentHealth, HealthStatus, InstanceIdentity, ShippingStatus};
use tokio::sync::watch;

use crate::config::{CloudWatchConfig, Config, CurrentConfig};
use crate::lifetime::Lifetime;
use crate::secrets::SecretsState;

pub use ship::{Destination, Sent, ship_pending};

#[derive(Debug, thiserror::Error)]
pub enum CloudWatchError {
    #[error("cannot {action} the CloudWatch spool {path}")]
    Spool {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] crate::state_file::StateFileError),
    #[error("cannot encode a spool record")]
    Encode(#[source] serde_json::Error),
    #[error("cannot run journalctl")]
    Journal(#[source] std::io::Error),
    #[error("journalctl failed: {0}")]
    JournalFailed(String),
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
}

/// Nothing asks the shipper to act, so none of these reaches a request;
/// were one to, it is hostd's own trouble (the disk, journalctl) or
/// CloudWatch's.
impl crate::http::Refusal for CloudWatchError {
    fn http_status(&self) -> u16 {
        match self {
            Self::Sink(_) => 502,
            Self::Spool { .. }
            | Self::State(_)
            | Self::Encode(_)
            | Self::Journal(_)
            | Self::JournalFailed(_) => 500,
        }
    }
}

/// What the shipper publishes, for `/health`, `hostctl status` and
/// `GET /v1/cloudwatch`. No line is ever part of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShippingState {
    /// The log group, with `[cloudwatch]`.
    pub log_group: Option<String>,
    pub max_lag: Duration,
    /// When shipping (this configuration of it) began.
    pub since: Option<SystemTime>,
    /// Time of the oldest line not yet accepted.
    pub oldest_unshipped_ms: Option<i64>,
    pub last_success: Option<SystemTime>,
    pub backlog_bytes: u64,
    pub dropped: u64,
    pub shipped: u64,
    pub calls: u64,
    pub problem: Option<String>,
}

impl ShippingState {
    /// How far behind shipping is at `now`: the oldest line waiting, or
    /// while rounds fail, the time since the last good one.
    pub fn lag(&self, now: SystemTime) -> Duration {
        let waiting = self.oldest_unshipped_ms.map_or(Duration::ZERO, |ms| {
            let t = SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            now.duration_since(t).unwrap_or_default()
        });
        let failing = match (&self.problem, self.last_success.or(self.since)) {
            (Some(_), Some(t)) => now.duration_since(t).unwrap_or_default(),
            _ => Duration::ZERO,
        };
        waiting.max(failing)
    }

    pub fn status(&self, now: SystemTime) -> Option<ShippingStatus> {
        Some(ShippingStatus {
            log_group: self.log_group.clone()?,
            lag_seconds: self.lag(now).as_secs(),
            max_lag_seconds: self.max_lag.as_secs(),
            backlog_bytes: self.backlog_bytes,
            dropped_lines: self.dropped,
            shipped_lines: self.shipped,
            calls: self.calls,
            last_success: self.last_success.map(hostd_api::time::rfc3339),
            problem: self.problem.clone(),
        })
    }

    /// `cloudwatch`: degraded once the lag passes `max_lag`, naming the
    /// lag and the last problem. Absent without `[cloudwatch]`.
    pub fn component(&self, now: SystemTime) -> Option<ComponentHealth> {
        self.log_group.as_ref()?;
        let lag = self.lag(now);
        let behind = lag > self.max_lag;
        Some(ComponentHealth {
            name: "cloudwatch".to_owned(),
            status: if behind {
                HealthStatus::Degraded
            } else {
                HealthStatus::Healthy
            },
            reason: behind.then(|| {
                let why = self.problem.as_deref().unwrap_or("still catching up");
                format!(
                    "shipping to CloudWatch Logs is {} behind (bound {}): {why}",
                    humantime::format_duration(Duration::from_secs(lag.as_secs())),
                    humantime::format_duration(self.max_lag),
                )
            }),
        })
    }
}

/// The `cloudwatch` component of `/health`, from the published state.
pub struct Judged(pub watch::Receiver<ShippingState>);

impl crate::health::Judge for Judged {
    fn component(&self, now: SystemTime) -> Option<ComponentHealth> {
        self.0.borrow().component(now)
    }
}

/// Made before the health checker (which reads it) and the shipper
/// (which needs the checker's snapshots for its metrics).
pub fn channel() -> (watch::Sender<ShippingState>, watch::Receiver<ShippingState>) {
    watch::channel(ShippingState::default())
}

pub struct Deps {
    pub secrets: watch::Receiver<SecretsState>,
    pub metrics: crate::metrics::Deps,
    /// Filled when instance metadata answers: the `{host}` of stream
    /// names and the default `InstanceId` dimension.
    pub instance: Arc<OnceLock<InstanceIdentity>>,
    /// Metadata is off (`AWS_EC2_METADATA_DISABLED`): no id will come.
    pub metadata_disabled: bool,
    /// The `{host}` without an instance id.
    pub hostname: String,
}

#[derive(Clone)]
pub struct CloudWatchHandle {
    state: watch::Receiver<ShippingState>,
}

impl CloudWatchHandle {
    pub fn state(&self) -> watch::Receiver<ShippingState> {
        self.state.clone()
    }
}

/// Ships while `[cloudwatch]` is configured, starting again (from the
/// spool and cursor on disk) when an apply changes what it ships or how.
pub fn spawn(
    config: CurrentConfig,
    deps: Deps,
    publish: watch::Sender<ShippingState>,
    lifetime: &Lifetime,
) -> CloudWatchHandle {
    let state = publish.subscribe();
    let ending = lifetime.clone();
    let mut changes = config.clone();
    lifetime.spawn("CloudWatch shipper", async move {
        loop {
            let current = config.get();
            let settings = Settings::of(&current);
            publish.send_replace(ShippingState::default());
            let running = async {
                match &settings {
                    Some(_) => run::run(Arc::clone(&current), &deps, &publish, &ending).await,
                    None => std::future::pending().await,
                }
            };
            let changed = async {
                loop {
                    changes.changed().await;
                    if Settings::of(&changes.get()) != settings {
                        return;
                    }
                }
            };
            tokio::select! {
                () = running => return,
                () = changed => {}
                () = ending.ending() => return,
            }
        }
    });
    CloudWatchHandle { state }
}

/// What the shipper is built from: when these are the same, an apply
/// leaves it running.
#[derive(Debug, PartialEq)]
struct Settings {
    cloudwatch: CloudWatchConfig,
    metrics: crate::config::MetricsConfig,
    units: Vec<String>,
    state_dir: PathBuf,
}

impl Settings {
    fn of(config: &Config) -> Option<Self> {
        let cw = config.cloudwatch.clone()?;
        Some(Self {
            units: units(config, &cw),
            metrics: config.metrics.clone(),
            cloudwatch: cw,
            state_dir: config.state_dir.clone(),
        })
    }
}

/// journalctl `-u` patterns: hostd and every unit it writes (`hostd*`:
/// jobs, hooks, tasks, apps, the front), each service's unit (every
/// instance of a template), and `cloudwatch.units`.
pub fn units(config: &Config, cw: &CloudWatchConfig) -> Vec<String> {
    let mut out = vec!["hostd*".to_owned()];
    for s in config.services.values() {
        let u = s.unit.as_str();
        out.push(if s.unit.is_template() {
            u.replace("@.", "@*.")
        } else {
            u.to_owned()
        });
    }
    out.extend(cw.units.iter().map(|u| u.as_str().to_owned()));
    out.sort();
    out.dedup();
    out
}

mod run;

#[cfg(test)]
mod tests;
