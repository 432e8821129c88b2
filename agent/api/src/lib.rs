//! Types that cross the wire between hostd (on the host) and hostctl (on the
//! operator's machine), and the rules both sides apply ([`paths`], release
//! names, [`time`], [`errors`], how artifacts are cut into [`chunks`]).
//! Kept free of runtime dependencies so both sides, and scripts reading
//! `--json` output, agree on one shape.

use serde::{Deserialize, Serialize};

pub mod backup;
pub mod chunks;
pub mod deploy;
pub mod errors;
pub mod host_config;
pub mod jobs;
pub mod limits;
pub mod mountinfo;
pub mod paths;
pub mod restore;
pub mod time;
pub mod toml_text;

pub use backup::{BackupKind, BackupRequest, BackupRun, BackupsList, DrillRun, SnapshotInfo};
pub use deploy::{
    ArtifactInfo, DeployEvent, DeployHooks, DeployOutcome, DeployRequest, HealthGate, LedgerEntry,
    LockHolder, LockStatus, ReleasesList, RollbackRequest,
};
pub use errors::error_chain;
pub use host_config::{
    ActionKind, AppliesList, ApplyEvent, ApplyOutcome, ApplyRecord, ApplyRequest, ConfigPlan,
    ConfigText, HostConfig, KeyChange, PlanAction, UnitFileChange,
};
pub use jobs::{JobRun, JobStatus, JobsList, RunEvent, TaskRequest, TaskSpec};
pub use restore::{RestoreEvent, RestorePlan, RestoreRequest};

/// Where hostd serves its control API unless hostd.toml says otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/hostd/control.sock";

/// hostd's front: a binary of its own, built with hostd and installed (and
/// shipped by `upgrade-hostd`) beside it.
pub const FRONT_BINARY: &str = "hostd-front";

/// Version prefix of every control API path.
pub const API_PREFIX: &str = "/v1";

/// Whether `v` may name a release: it becomes a directory on the host
/// (`releases/<v>`), so letters, digits, `.`, `_`, `-` and `+` only, not
/// starting with `.`, at most 128 characters. hostctl checks before
/// uploading, hostd again before writing.
pub fn is_release_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && !v.starts_with('.')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
}

/// `GET /v1/status`: what hostctl shows for one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostStatus {
    pub hostname: String,
    pub hostd_version: String,
    /// sha256 of the running hostd binary: which build runs, beyond the
    /// version (`hostctl upgrade-hostd` waits for it to change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostd_build: Option<String>,
    /// Seconds since hostd started.
    pub hostd_uptime_seconds: u64,
    /// One entry per unit: a plain service has one, an instanced service
    /// (`api@.service`) one per instance.
    pub units: Vec<UnitStatus>,
    /// What hostd keeps each service at (persisted across restarts).
    #[serde(default)]
    pub services: Vec<ServiceSummary>,
    /// Recent failures hostd saw and what it did, oldest first (bounded).
    #[serde(default)]
    pub events: Vec<UnitEvent>,
    pub health: HealthReport,
    /// The EC2 instance, from IMDSv2; absent off EC2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceIdentity>,
    /// The last `hostctl apply` (or reload) of its configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<host_config::ApplyRecord>,
    /// Shipping of journals and metrics to CloudWatch, with `[cloudwatch]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<ShippingStatus>,
}

/// How hostd's shipping to CloudWatch Logs is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingStatus {
    pub log_group: String,
    /// Age of the oldest line not yet accepted by CloudWatch (or, while
    /// the journal cannot be read, since it last was); 0 when caught up.
    pub lag_seconds: u64,
    /// `/health` is degraded past this lag.
    pub max_lag_seconds: u64,
    /// Waiting in the spool on disk.
    pub backlog_bytes: u64,
    /// Lines dropped since the spool was made: the backlog bound was
    /// reached, or CloudWatch refused them as too old or too new.
    pub dropped_lines: u64,
    /// Lines and calls accepted since hostd started.
    pub shipped_lines: u64,
    pub calls: u64,
    /// RFC 3339: the last round that read and shipped without error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    /// Why the last round failed (names the call and the error code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What EC2's instance metadata says this host is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceIdentity {
    pub instance_id: String,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Only when the instance allows tags in metadata.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
}

/// State of one systemd unit as systemd's D-Bus API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitStatus {
    /// The service name in hostd.toml (e.g. `postgresql`).
    pub service: String,
    /// The systemd unit (e.g. `postgresql@15-main.service`, `api@2.service`).
    pub unit: String,
    /// The instance number of an instanced service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u32>,
    pub active_state: ActiveState,
    /// systemd's SubState verbatim (`running`, `dead`, `exited`...).
    pub sub_state: String,
}

/// A service as configured and as hostd keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSummary {
    pub name: String,
    /// The unit, or the template for an instanced service (`api@.service`).
    pub unit: String,
    /// Whether hostd keeps it running (false after `hostctl stop`).
    pub running: bool,
    /// Desired instance count of an instanced service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// Restarts hostd has made after failures since it started.
    pub restarts: u64,
}

/// A managed unit failed; what hostd saw and did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitEvent {
    /// RFC 3339.
    pub time: String,
    pub service: String,
    pub unit: String,
    /// systemd's Result of the service (`signal`, `exit-code`, `timeout`...).
    pub result: String,
    /// Exit status, or the signal number when `result` is `signal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// `restarting in 2s`, `restarted`, `gave up after 5 restarts`...
    pub action: String,
}

/// `POST /v1/services/{name}/{start|stop|restart}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceAction {
    Start,
    Stop,
    Restart,
}

impl ServiceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
        }
    }
}

/// Answer to a service action or a scale: the units touched and their state
/// afterwards. Errors come as [`ErrorBody`] with 404 (unknown service; the
/// message lists the known ones), 422 (count out of range), 409 (another
/// operation holds the host), 500 (a job failed; the message carries the
/// unit's last journal lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResult {
    pub service: String,
    pub units: Vec<UnitStatus>,
    /// Seconds the operation took, waits for health included.
    pub seconds: f64,
}

/// `PUT /v1/services/{name}/instances`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleRequest {
    pub instances: u32,
}

/// systemd's ActiveState. Unknown values from a newer systemd map to `Unknown`
/// rather than failing the whole status call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActiveState {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Maintenance,
    Refreshing,
    #[serde(other)]
    Unknown,
}

impl ActiveState {
    pub fn parse(s: &str) -> Self {
        match s {
            "active" => Self::Active,
            "reloading" => Self::Reloading,
            "inactive" => Self::Inactive,
            "failed" => Self::Failed,
            "activating" => Self::Activating,
            "deactivating" => Self::Deactivating,
            "maintenance" => Self::Maintenance,
            "refreshing" => Self::Refreshing,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Reloading => "reloading",
            Self::Inactive => "inactive",
            Self::Failed => "failed",
            Self::Activating => "activating",
            Self::Deactivating => "deactivating",
            Self::Maintenance => "maintenance",
            Self::Refreshing => "refreshing",
            Self::Unknown => "unknown",
        }
    }
}

/// Overall or per-component health. Ordered so that `max` gives the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    /// A warning: still serving, answers 200, but someone should look.
    Degraded,
    /// Answers 503.
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// Body of `GET /health` and part of [`HostStatus`]. Never carries secrets:
/// reasons are built from unit names, states and figures only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub status: HealthStatus,
    /// RFC 3339 time of the check this report comes from.
    pub checked_at: String,
    pub components: Vec<ComponentHealth>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentHealth {
    /// `unit:redis`, later `postgres`, `disk:/data`...
    pub name: String,
    pub status: HealthStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Body of every non-2xx control API answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `POST /v1/secrets/sync`: what one on-demand refresh did. Names only,
/// never a value. 404 with [`ErrorBody`] when `[secrets]` is not configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsSyncResult {
    /// SSM answered with a usable set (false: the last good set stays).
    pub fetched: bool,
    /// RFC 3339: first failed fetch since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_since: Option<String>,
    /// Services whose credentials changed.
    pub changed: Vec<String>,
    /// Services hostd restarted for it (instances one at a time).
    pub restarted: Vec<String>,
    /// Parameters this fetch found added, changed or removed, whether or
    /// not a service receives them (hostd's own `backup_password`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<String>,
    /// Why the fetch, the delivery or a restart failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/secrets`: the parameters in use, by name. Never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretsList {
    /// The SSM prefix (`secrets.path`).
    pub path: String,
    /// RFC 3339 times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_since: Option<String>,
    pub parameters: Vec<SecretInfo>,
}

/// One parameter: its name relative to the prefix, SSM's version, when it
/// last changed and the services that receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    pub services: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_active_state_does_not_fail_decoding() -> Result<(), serde_json::Error> {
        let s: ActiveState = serde_json::from_str("\"something-new\"")?;
        assert_eq!(s, ActiveState::Unknown);
        assert_eq!(ActiveState::parse("failed"), ActiveState::Failed);
        Ok(())
    }

    #[test]
    fn status_from_an_older_hostd_still_decodes() -> Result<(), serde_json::Error> {
        let old = r#"{"hostname":"h","hostd_version":"0.1.0","hostd_uptime_seconds":1,
            "units":[{"service":"redis","unit":"redis-server.service","active_state":"active","sub_state":"running"}],
            "health":{"status":"healthy","checked_at":"x","components":[]}}"#;
        let s: HostStatus = serde_json::from_str(old)?;
        assert!(s.services.is_empty() && s.events.is_empty());
        assert_eq!(s.units[0].instance, None);
        Ok(())
    }

    #[test]
    fn health_status_orders_worst_last() {
        let worst = [
            HealthStatus::Degraded,
            HealthStatus::Unhealthy,
            HealthStatus::Healthy,
        ]
        .into_iter()
        .max();
        assert_eq!(worst, Some(HealthStatus::Unhealthy));
    }

    #[test]
    fn health_body_has_status_field_in_lowercase() -> Result<(), serde_json::Error> {
        let r = HealthReport {
            status: HealthStatus::Healthy,
            checked_at: "2026-01-01T00:00:00Z".into(),
            components: vec![],
        };
        let body = serde_json::to_string(&r)?;
        assert!(body.contains("\"status\":\"healthy\""), "{body}");
        Ok(())
    }
}

/// `POST /v1/hostd/upgrade`: install the hostd binary uploaded as an
/// artifact (a tar holding the file `hostd`) and restart hostd on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradeRequest {
    /// The artifact's digest (`PUT /v1/artifacts/{digest}` first).
    pub artifact: String,
    /// sha256 of the binary itself, checked after unpacking.
    pub build: String,
    #[serde(default)]
    pub requested_by: String,
}

/// The answer, sent before hostd restarts itself on the new build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradeAnswer {
    pub previous_build: Option<String>,
    pub build: String,
    /// What the new binary's `--version` printed.
    pub version: String,
}
