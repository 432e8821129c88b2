//! The sections of hostd.toml beyond `[health]` and `[control]`: managed
//! services, component checks and metrics. Defaults live beside each field.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::secrets::ParameterName;
use super::values::{Count, HumanDuration, Percent, UnitName};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// A unit, or a template (`api@.service`) for a service that runs as
    /// numbered instances (`api@1.service`, `api@2.service`...). Unset with
    /// `command`: hostd writes the template itself, `hostd-app-NAME@.service`
    /// (see `crate::units::apps`); after loading it is always set.
    #[serde(default = "UnitName::undeclared")]
    pub unit: UnitName,
    // An app declared by what it is rather than by a unit file: a command
    // run in the current release, which listens on `$PORT` if it has a
    // `port` (answering `health_path` there) and is a worker without one.
    /// Run with `/bin/sh -c` (so `node server.js` finds node on PATH) in
    /// `<release_dir>/current`; `exec` it so SIGTERM reaches the app.
    #[serde(default)]
    pub command: Option<String>,
    /// The app's public port, served by hostd's front, which forwards to
    /// the instances, each listening on its own private port on loopback
    /// (`$PORT`). Unset: a worker, supervised and deployed but not gated
    /// over HTTP.
    #[serde(default)]
    pub port: Option<u16>,
    /// Instance N listens on this plus N (the second set of a blue-green
    /// replacement on this plus 100 plus N). Unset: `port` + 10000.
    #[serde(default)]
    pub instance_ports: Option<u16>,
    /// How long an instance taken out of the front has for the requests it
    /// is still answering before it is stopped.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: HumanDuration,
    /// The OS user it runs as, created by hostd when missing. Unset: the
    /// service's name.
    #[serde(default)]
    pub user: Option<String>,
    /// Extra environment (not secrets: those come from SSM).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// A JIT runtime (Node.js, the JVM, .NET): writable-executable memory
    /// and the memory-protection-key system calls V8 uses, which the
    /// default confinement denies (the app dies of SIGSYS at start).
    #[serde(default)]
    pub jit: bool,
    /// Further `[Service]` settings, `Key=value` each, added last (e.g.
    /// `LimitNOFILE=65536`, `ReadWritePaths=/data/uploads`).
    #[serde(default)]
    pub unit_settings: Vec<String>,
    /// A socket unit the instances share (`api.socket`): started first and
    /// kept open, so restarts refuse no connection.
    #[serde(default)]
    pub socket: Option<UnitName>,
    /// Instances to run on first start; afterwards `hostctl scale` decides
    /// and hostd remembers. Only for templates.
    #[serde(default)]
    pub instances: Option<Count>,
    #[serde(default = "default_max_instances")]
    pub max_instances: Count,
    /// Per-instance health over HTTP on a Unix socket; `{instance}` is
    /// replaced by the instance number (`/run/api/{instance}/health.sock`).
    #[serde(default)]
    pub health_socket: Option<String>,
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// How long a started instance has to answer its health check before
    /// the start counts as failed.
    #[serde(default = "default_health_timeout")]
    pub health_timeout: HumanDuration,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// A PostgreSQL role and database of this name that hostd creates
    /// before starting the service (the service's OS user reaches it by peer
    /// authentication).
    #[serde(default)]
    pub database: Option<String>,
    /// Parameter names (relative to `secrets.path`) this service receives
    /// as systemd credentials. Unset: every parameter for a template (app)
    /// service, none for others; `[]` gives it none. See
    /// [`Config::secrets_for`](super::Config::secrets_for).
    #[serde(default)]
    pub secrets: Option<Vec<ParameterName>>,
    /// Where `hostctl deploy` installs releases: `<release_dir>/releases/<version>/`
    /// and the `<release_dir>/current` link the unit starts from. Unset: the
    /// service is not deployed by hostd.
    #[serde(default)]
    pub release_dir: Option<std::path::PathBuf>,
}

impl ServiceConfig {
    /// hostd writes this service's unit from `command`.
    pub fn is_app(&self) -> bool {
        self.command.is_some()
    }

    /// The first of the private ports of an app on a port (instance N on
    /// this plus N).
    pub fn instance_port_base(&self) -> Option<u32> {
        let port = self.port?;
        Some(
            self.instance_ports
                .map_or(u32::from(port) + 10_000, u32::from),
        )
    }

    /// Instance `n`'s private port, for an app on a port.
    pub fn instance_port(&self, n: u32) -> Option<u16> {
        u16::try_from(self.instance_port_base()? + n).ok()
    }

    /// The user an app runs as.
    pub fn app_user<'a>(&'a self, name: &'a str) -> &'a str {
        self.user.as_deref().unwrap_or(name)
    }

    /// An app with no release installed yet: nothing to run, so it is
    /// "not deployed" (not started, not unhealthy) until its first deploy.
    pub fn awaits_first_release(&self) -> bool {
        self.is_app()
            && self
                .release_dir
                .as_ref()
                .is_some_and(|d| std::fs::symlink_metadata(d.join("current")).is_err())
    }
}

fn default_health_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_max_instances() -> Count {
    Count(8)
}

fn default_drain_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_health_path() -> String {
    "/health".to_owned()
}

/// What hostd does when a managed unit fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default = "default_restart_mode")]
    pub policy: RestartMode,
    /// First wait before a restart; doubles per failure up to `backoff_max`.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial: HumanDuration,
    #[serde(default = "default_backoff_max")]
    pub backoff_max: HumanDuration,
    /// More failures than this within `window` and hostd gives up (and says so).
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    #[serde(default = "default_restart_window")]
    pub window: HumanDuration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            policy: default_restart_mode(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
            max_restarts: default_max_restarts(),
            window: default_restart_window(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    OnFailure,
    Never,
}

fn default_restart_mode() -> RestartMode {
    RestartMode::OnFailure
}
fn default_backoff_initial() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_backoff_max() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_max_restarts() -> u32 {
    10
}
fn default_restart_window() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

/// Component checks beyond unit states. Each is optional.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksConfig {
    /// libpq connection string for `SELECT 1` (no password here: use peer
    /// authentication or, later, a secret).
    #[serde(default)]
    pub postgres: Option<String>,
    /// Redis URL for PING.
    #[serde(default)]
    pub redis: Option<String>,
    /// Bound on each check.
    #[serde(default = "default_check_timeout")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub disk: DiskThresholds,
    #[serde(default)]
    pub memory: PercentThresholds,
    #[serde(default)]
    pub load: LoadThresholds,
}

/// The connection strings may carry a password: `{:?}` of the config
/// (in a log, a panic message) says only whether they are set.
impl std::fmt::Debug for ChecksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| v.as_ref().map(|_| "<set>");
        f.debug_struct("ChecksConfig")
            .field("postgres", &set(&self.postgres))
            .field("redis", &set(&self.redis))
            .field("timeout", &self.timeout)
            .field("disk", &self.disk)
            .field("memory", &self.memory)
            .field("load", &self.load)
            .finish()
    }
}

impl Default for ChecksConfig {
    fn default() -> Self {
        Self {
            postgres: None,
            redis: None,
            timeout: default_check_timeout(),
            disk: DiskThresholds::default(),
            memory: PercentThresholds::default(),
            load: LoadThresholds::default(),
        }
    }
}

fn default_check_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskThresholds {
    /// Mount points to watch; a path that is not mounted is checked on the
    /// file system that holds it.
    #[serde(default = "default_disk_paths")]
    pub paths: Vec<PathBuf>,
    #[serde(default = "default_degraded_percent")]
    pub degraded_percent: Percent,
    #[serde(default = "default_unhealthy_percent")]
    pub unhealthy_percent: Percent,
}

impl Default for DiskThresholds {
    fn default() -> Self {
        Self {
            paths: default_disk_paths(),
            degraded_percent: default_degraded_percent(),
            unhealthy_percent: default_unhealthy_percent(),
        }
    }
}

fn default_disk_paths() -> Vec<PathBuf> {
    vec![PathBuf::from("/"), PathBuf::from("/data")]
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PercentThresholds {
    #[serde(default = "default_degraded_percent")]
    pub degraded_percent: Percent,
    #[serde(default = "default_unhealthy_percent")]
    pub unhealthy_percent: Percent,
}

impl Default for PercentThresholds {
    fn default() -> Self {
        Self {
            degraded_percent: default_degraded_percent(),
            unhealthy_percent: default_unhealthy_percent(),
        }
    }
}

fn default_degraded_percent() -> Percent {
    Percent(80.0)
}
fn default_unhealthy_percent() -> Percent {
    Percent(95.0)
}

/// 1-minute load average per CPU.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadThresholds {
    #[serde(default = "default_load_degraded")]
    pub degraded_per_cpu: f64,
    #[serde(default = "default_load_unhealthy")]
    pub unhealthy_per_cpu: f64,
}

impl Default for LoadThresholds {
    fn default() -> Self {
        Self {
            degraded_per_cpu: default_load_degraded(),
            unhealthy_per_cpu: default_load_unhealthy(),
        }
    }
}

fn default_load_degraded() -> f64 {
    2.0
}
fn default_load_unhealthy() -> f64 {
    8.0
}

/// Bounds on what one release may unpack to, checked while unpacking: an
/// artifact is uploaded by whoever may deploy, and a small zstd stream can
/// expand to fill `/srv`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    #[serde(default = "default_max_release_mib")]
    pub max_release_mib: u64,
    #[serde(default = "default_max_release_entries")]
    pub max_release_entries: u64,
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            max_release_mib: default_max_release_mib(),
            max_release_entries: default_max_release_entries(),
        }
    }
}

fn default_max_release_mib() -> u64 {
    4096
}
fn default_max_release_entries() -> u64 {
    200_000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// CloudWatch Embedded Metric Format: one JSON document per line,
    /// appended here for the CloudWatch agent to ship. None: off.
    #[serde(default)]
    pub emf_path: Option<PathBuf>,
    #[serde(default = "default_emf_interval")]
    pub emf_interval: HumanDuration,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Dimensions added to every EMF metric (e.g. `InstanceId`).
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            emf_path: None,
            emf_interval: default_emf_interval(),
            namespace: default_namespace(),
            dimensions: BTreeMap::new(),
        }
    }
}

fn default_emf_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_namespace() -> String {
    "hostd".to_owned()
}

/// The unit files hostd installs (see `units.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitsConfig {
    /// Shipped with hostd; copied into `target_dir` when different.
    #[serde(default = "default_units_source")]
    pub source_dir: PathBuf,
    #[serde(default = "default_units_target")]
    pub target_dir: PathBuf,
}

impl Default for UnitsConfig {
    fn default() -> Self {
        Self {
            source_dir: default_units_source(),
            target_dir: default_units_target(),
        }
    }
}

fn default_units_source() -> PathBuf {
    PathBuf::from("/usr/local/lib/hostd/units")
}
fn default_units_target() -> PathBuf {
    PathBuf::from("/etc/systemd/system")
}
