//! hostd.toml: parsed strictly, so a typo is an error at start rather than a
//! silently ignored setting. Every error names the file, line and key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod apps;
mod backup;
mod cloudwatch;
mod current;
mod jobs;
mod secrets;
mod sections;
mod values;

pub use backup::*;
pub use cloudwatch::*;
pub use current::CurrentConfig;
pub use jobs::*;
pub use secrets::*;
pub use sections::*;
pub use values::*;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/hostd/hostd.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `path:line: key: message`, the shape editors and operators jump to.
    #[error("{path}:{line}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub control: ControlConfig,
    /// Keyed by the name operators use (`postgresql`, `redis`, `api`).
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    #[serde(default)]
    pub checks: ChecksConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Where hostd keeps its state (desired service state...).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub units: UnitsConfig,
    /// None: hostd delivers no secrets.
    #[serde(default)]
    pub secrets: Option<SecretsConfig>,
    /// None: hostd takes no backups.
    #[serde(default)]
    pub backup: Option<BackupConfig>,
    /// Scheduled jobs, keyed by name (`cleanup`, `sitemap`).
    #[serde(default)]
    pub jobs: BTreeMap<String, JobConfig>,
    #[serde(default)]
    pub deploy: DeployConfig,
    /// None: nothing is shipped to CloudWatch.
    #[serde(default)]
    pub cloudwatch: Option<CloudWatchConfig>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/hostd")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    #[serde(default = "default_health_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_check_interval")]
    pub check_interval: CheckInterval,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            listen: default_health_listen(),
            check_interval: default_check_interval(),
        }
    }
}

fn default_health_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7780))
}

fn default_check_interval() -> CheckInterval {
    CheckInterval(Duration::from_secs(5))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    #[serde(default = "default_control_socket")]
    pub socket: PathBuf,
    /// Group allowed to open the socket besides root. None: root only.
    #[serde(default)]
    pub group: Option<String>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            socket: default_control_socket(),
            group: None,
        }
    }
}

fn default_control_socket() -> PathBuf {
    PathBuf::from(hostd_api::DEFAULT_CONTROL_SOCKET)
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// `path` is only used to name the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let invalid = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
            ConfigError::Invalid {
                path: path.to_owned(),
                line: span.map_or(1, |s| line_of(text, s.start)),
                key,
                message,
            }
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            // A duplicate key's span is the key itself.
            let key = e
                .span()
                .and_then(|s| hostd_api::toml_text::key_at(text, s))
                .unwrap_or_else(|| "(syntax)".into());
            invalid(e.span(), key, e.message().to_owned())
        })?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.message().to_owned();
            invalid(inner.span(), key_of(&path), message)
        })?;
        config
            .complete_services()
            .and_then(|()| config.validate())
            .map_err(|(key, message)| invalid(find_key(text, &key), key, message))?;
        Ok(config)
    }

    /// hostd's administrator connection to PostgreSQL (libpq conninfo):
    /// `checks.postgres`, else peer authentication on the local socket.
    pub fn postgres_admin(&self) -> &str {
        self.checks
            .postgres
            .as_deref()
            .unwrap_or(DEFAULT_POSTGRES_ADMIN)
    }

    /// The Redis hostd checks and sets the password of: `checks.redis`, else
    /// the local default.
    pub fn redis_address(&self) -> &str {
        self.checks
            .redis
            .as_deref()
            .unwrap_or(DEFAULT_REDIS_ADDRESS)
    }

    /// Every service ends up with a unit: its own, or for an app declared
    /// by `command` the template hostd writes.
    fn complete_services(&mut self) -> Result<(), (String, String)> {
        for (name, svc) in &mut self.services {
            match (svc.unit.is_undeclared(), svc.command.is_some()) {
                (true, true) => svc.unit = UnitName::app(name),
                (false, false) => {}
                (true, false) => {
                    return Err((
                        format!("services.{name}"),
                        "needs `unit` (a unit file of your own) or `command` (hostd writes the unit)"
                            .into(),
                    ));
                }
                (false, true) => {
                    return Err((
                        format!("services.{name}.command"),
                        "set either `unit` or `command`, not both".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Rules that span keys, which serde cannot check field by field.
    fn validate(&self) -> Result<(), (String, String)> {
        for (name, svc) in &self.services {
            self.validate_service(name, svc)?;
        }
        for (name, job) in &self.jobs {
            if !is_plain_name(name) {
                return Err((
                    format!("jobs.{name}"),
                    "job names are 1 to 32 of a-z, 0-9 and -".into(),
                ));
            }
            job.validate(&self.services)
                .map_err(|(k, message)| (format!("jobs.{name}.{k}"), message))?;
        }
        self.validate_checks()?;
        if let Some(b) = &self.backup {
            self.validate_backup(b)?;
        }
        Ok(())
    }

    fn validate_service(&self, name: &str, svc: &ServiceConfig) -> Result<(), (String, String)> {
        let key = |k: &str| format!("services.{name}.{k}");
        if !is_plain_name(name) {
            return Err((
                format!("services.{name}"),
                "service names are 1 to 32 of a-z, 0-9 and -".into(),
            ));
        }
        if svc.is_app() {
            apps::validate(self, name, svc).map_err(|(k, m)| (key(k), m))?;
        } else if let Some(k) = apps::app_only_key(svc) {
            return Err((key(k), "only for an app declared by `command`".into()));
        }
        let template = svc.unit.is_template();
        if !template && (svc.instances.is_some() || svc.health_socket.is_some()) {
            let k = if svc.instances.is_some() {
                "instances"
            } else {
                "health_socket"
            };
            return Err((
                key(k),
                format!("only a template unit (like `{name}@.service`) runs instances"),
            ));
        }
        if let Some(n) = svc.instances
            && n > svc.max_instances
        {
            return Err((
                key("instances"),
                format!("{} is above max_instances ({})", n.0, svc.max_instances.0),
            ));
        }
        if let Some(h) = &svc.health_socket
            && (!h.starts_with('/') || !h.contains("{instance}"))
        {
            return Err((
                key("health_socket"),
                "must be an absolute path containing {instance}".into(),
            ));
        }
        if let Some(db) = &svc.database
            && !is_sql_identifier(db)
        {
            return Err((
                key("database"),
                "must be a plain SQL name: a-z, 0-9 and _, not starting with a digit, at most 63"
                    .into(),
            ));
        }
        if let Some(db) = svc
            .database
            .as_deref()
            .filter(|db| is_reserved_database(db))
        {
            return Err((
                key("database"),
                format!(
                    "`{db}` is PostgreSQL's or hostd's own (postgres, template0/1, pg_*, hostd_*); name the app's database after the app"
                ),
            ));
        }
        if let Some(dir) = &svc.release_dir
            && (!dir.is_absolute() || dir.parent().is_none())
        {
            return Err((
                key("release_dir"),
                "must be an absolute directory below / (e.g. /srv/api)".into(),
            ));
        }
        if !svc.health_path.starts_with('/') {
            return Err((key("health_path"), "must start with /".into()));
        }
        if svc.secrets.is_some() && self.secrets.is_none() {
            return Err((
                key("secrets"),
                "names secrets, but there is no [secrets] section to fetch them from".into(),
            ));
        }
        let r = &svc.restart;
        if r.backoff_initial.0.is_zero() || r.backoff_initial > r.backoff_max {
            return Err((
                key("restart.backoff_initial"),
                "must be above zero and at most backoff_max".into(),
            ));
        }
        Ok(())
    }

    fn validate_checks(&self) -> Result<(), (String, String)> {
        let c = &self.checks;
        // The parsers' messages describe the problem without repeating the
        // value, which may one day hold a password.
        if let Some(conninfo) = &c.postgres
            && let Err(e) = conninfo.parse::<postgres::Config>()
        {
            return Err((
                "checks.postgres".into(),
                format!("not a libpq connection string: {e}"),
            ));
        }
        if let Some(url) = &c.redis
            && let Err(e) = redis::Client::open(url.as_str())
        {
            return Err((
                "checks.redis".into(),
                format!("not a Redis URL ({:?})", e.kind()),
            ));
        }
        if self
            .secrets
            .as_ref()
            .is_some_and(|s| s.redis_password.is_some())
            && split_redis_address(self.redis_address()).is_none()
        {
            let key = if c.redis.is_some() {
                "checks.redis"
            } else {
                "secrets.redis_password"
            };
            return Err((key.into(), REDIS_ADDRESS_RULE.into()));
        }
        if c.disk.degraded_percent > c.disk.unhealthy_percent {
            return Err((
                "checks.disk.degraded_percent".into(),
                "must not be above unhealthy_percent".into(),
            ));
        }
        if c.memory.degraded_percent > c.memory.unhealthy_percent {
            return Err((
                "checks.memory.degraded_percent".into(),
                "must not be above unhealthy_percent".into(),
            ));
        }
        if self.metrics.emf_interval.0 < Duration::from_secs(1) {
            return Err(("metrics.emf_interval".into(), "must be at least 1s".into()));
        }
        if let Some(cw) = &self.cloudwatch {
            cw.check()?;
        }
        Ok(())
    }

    fn validate_backup(&self, b: &BackupConfig) -> Result<(), (String, String)> {
        if self
            .secrets
            .as_ref()
            .is_none_or(|s| s.backup_password.is_none())
        {
            return Err((
                "backup".into(),
                "needs the repository password: set secrets.backup_password to its parameter"
                    .into(),
            ));
        }
        for db in b.databases.iter().flatten() {
            if !is_sql_identifier(db) || is_reserved_database(db) {
                return Err((
                    "backup.databases".into(),
                    format!("`{db}` is not a plain SQL name of an app's database"),
                ));
            }
        }
        if b.check_read_subset
            .parse::<rustic_core::ReadSubsetOption>()
            .is_err()
        {
            return Err((
                "backup.check_read_subset".into(),
                "not a subset like `5%`, `1/10` or `500MiB`".into(),
            ));
        }
        Ok(())
    }

    /// The instanced service whose template `unit` is an instance of.
    pub fn service_of_unit(&self, unit: &str) -> Option<(&str, Option<u32>)> {
        self.services.iter().find_map(|(name, svc)| {
            if svc.unit.as_str() == unit {
                Some((name.as_str(), None))
            } else {
                svc.unit.instance_of(unit).map(|n| (name.as_str(), Some(n)))
            }
        })
    }
}

/// Service and job names: they become parts of unit and file names.
/// hostd's administrator connection without `checks.postgres`: peer
/// authentication on the local socket.
pub const DEFAULT_POSTGRES_ADMIN: &str = "host=/run/postgresql user=postgres dbname=postgres";
/// The Redis hostd checks without `checks.redis`.
pub const DEFAULT_REDIS_ADDRESS: &str = "redis://127.0.0.1:6379/";
pub const REDIS_ADDRESS_RULE: &str = "the Redis address must be a redis:// or rediss:// URL without a user or password \
     (hostd adds the password from secrets.redis_password)";

/// A Redis address split at its scheme (`redis`, `host:port/db`) when
/// hostd can add a password to it: redis:// or rediss://, a host, and no
/// user or password of its own.
pub fn split_redis_address(address: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = address.split_once("://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    if !matches!(scheme, "redis" | "rediss") || authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some((scheme, rest))
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Databases and roles PostgreSQL or hostd itself relies on: an app
/// service named after one would be given (and a restore would replace)
/// the administrator's database or role.
pub fn is_reserved_database(name: &str) -> bool {
    matches!(name, "postgres" | "template0" | "template1")
        || name.starts_with("pg_")
        || name.starts_with("hostd_")
}

/// Names hostd puts into SQL; anything else is refused at load.
pub fn is_sql_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// serde_path_to_error already ends the path with an unknown field's name;
/// `.` is what it says for the top level of a syntax-level problem.
fn key_of(path: &str) -> String {
    match path {
        "." | "" => "(top level)".to_owned(),
        p => p.to_owned(),
    }
}

/// Where `a.b.c` is set, for errors found after parsing: the line of the
/// last path segment written as a key (`c = ...`) after its table header,
/// else the table header itself.
fn find_key(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut segments: Vec<&str> = key.split('.').collect();
    while !segments.is_empty() {
        let (last, table) = segments.split_last()?;
        let header = format!("[{}]", table.join("."));
        let start = if table.is_empty() {
            Some(0)
        } else {
            text.find(&header)
        };
        if let Some(start) = start {
            let mut offset = start;
            for line in text[start..].split_inclusive('\n') {
                let trimmed = line.trim_start();
                if offset > start && trimmed.starts_with('[') {
                    break;
                }
                if trimmed
                    .strip_prefix(last)
                    .is_some_and(|r| r.trim_start().starts_with('='))
                {
                    return Some(offset..offset + line.len());
                }
                offset += line.len();
            }
            let whole = format!("[{}]", segments.join("."));
            if let Some(at) = text.find(&whole) {
                return Some(at..at + whole.len());
            }
            return Some(start..start + header.len());
        }
        segments.pop();
    }
    None
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
